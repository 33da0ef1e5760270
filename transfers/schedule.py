"""Cron schedules: 5-field expressions evaluated in a time zone, with croniter and zoneinfo.

A schedule route stores ``next_run_at`` (UTC); the scheduler tick takes the routes whose
``next_run_at`` has come and sets the next one with :func:`next_run_after`. Evaluating in
the route's zone keeps "02:30 every day" at 02:30 local time across DST changes (croniter
handles the skipped and repeated hours).
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter


class InvalidSchedule(ValueError):
    """A cron expression or time zone that cannot be used; ``str()`` is safe to show."""


def check_cron(expression: str) -> str:
    """A standard 5-field expression (minute hour day-of-month month day-of-week)."""
    expression = " ".join(expression.split())
    if len(expression.split(" ")) != 5:
        raise InvalidSchedule("Use a 5-field cron expression: minute hour day-of-month month day-of-week.")
    try:
        croniter(expression)
    except (CroniterBadCronError, CroniterNotAlphaError, CroniterBadDateError, ValueError, KeyError) as exc:
        raise InvalidSchedule(f"Not a valid cron expression: {exc}") from None
    return expression


def check_timezone(name: str) -> str:
    """An IANA time zone name such as ``Europe/Paris`` or ``UTC``."""
    if not name or name != name.strip() or name.startswith("/") or ".." in name:
        raise InvalidSchedule("Use an IANA time zone name such as 'Europe/Paris' or 'UTC'.")
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise InvalidSchedule(f"Unknown time zone {name!r}; use an IANA name such as 'Europe/Paris'.") from None
    if name not in available_timezones() and name != "UTC":
        raise InvalidSchedule(f"Unknown time zone {name!r}; use an IANA name such as 'Europe/Paris'.")
    return name


def next_run_after(cron: str, tz: str, after: datetime) -> datetime:
    """The first time strictly after ``after`` that ``cron`` fires in zone ``tz``, in UTC."""
    if after.tzinfo is None:
        raise ValueError("after must be timezone-aware")
    local = after.astimezone(ZoneInfo(tz))
    nxt = croniter(cron, local).get_next(datetime)
    return nxt.astimezone(UTC)


def shortest_interval(cron: str, samples: int = 64) -> float:
    """The shortest gap, in seconds, between consecutive fire times of ``cron`` (in UTC)
    over its next ``samples`` fire times from a fixed Monday: enough to see a sub-hourly
    or sub-daily pattern."""
    it = croniter(cron, datetime(2025, 1, 6, tzinfo=UTC))
    times = [it.get_next(datetime) for _ in range(samples)]
    return min((b - a).total_seconds() for a, b in itertools.pairwise(times))


def fire_times_between(cron: str, tz: str, after: datetime, until: datetime, limit: int) -> list[datetime]:
    """The times ``cron`` fires in zone ``tz`` strictly after ``after`` and at or before
    ``until``, oldest first, at most ``limit`` of them, in UTC.

    Once per wall-clock time: when clocks go back, croniter fires a time in the repeated
    hour twice (01:30 EDT, then 01:30 EST); an expectation of "files by 01:30" means the
    first. A time skipped when clocks go forward fires at the first instant after it.
    """
    zone = ZoneInfo(tz)
    out: list[datetime] = []
    current = after
    last_wall = after.astimezone(zone).replace(tzinfo=None)
    while len(out) < limit:
        current = next_run_after(cron, tz, current)
        if current > until:
            break
        wall = current.astimezone(zone).replace(tzinfo=None)
        if wall == last_wall:
            continue
        last_wall = wall
        out.append(current)
    return out


def next_fire_after(cron: str, tz: str, after: datetime) -> datetime:
    """:func:`fire_times_between`'s next time after ``after`` (once per wall-clock time)."""
    current = after
    while True:
        found = fire_times_between(cron, tz, current, current + timedelta(days=400), 1)
        if found:
            return found[0]
        current += timedelta(days=400)


def is_due(next_run_at: datetime | None, now: datetime) -> bool:
    """A schedule with no next run yet is due at once (it then gets one)."""
    return next_run_at is None or next_run_at <= now


def next_run_of(values: Mapping[str, Any], now: datetime) -> datetime | None:
    """When a route (its ``trigger_type``, ``enabled``, ``cron``, ``timezone``) runs next
    after ``now``: None unless it is an enabled schedule. ``"schedule"`` is
    ``Route.Trigger.SCHEDULE``; this module stays free of models so routes and the mirror's
    restore both use it."""
    if values["trigger_type"] != "schedule" or not values["enabled"]:
        return None
    return next_run_after(values["cron"], values["timezone"], now)
