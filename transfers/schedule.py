"""Cron schedules: 5-field expressions evaluated in a time zone, with croniter and zoneinfo.

A schedule route stores ``next_run_at`` (UTC); the scheduler tick takes the routes whose
``next_run_at`` has come and sets the next one with :func:`next_run_after`. Evaluating in
the route's zone keeps "02:30 every day" at 02:30 local time across DST changes (croniter
handles the skipped and repeated hours).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
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
