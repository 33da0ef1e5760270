"""The stability rule: is a listed file finished being written?

A file is taken only once it is stable, by every rule the route turns on:

- ``min_age_seconds``: its modification time is at least that old;
- ``stable_polls``: two polls in a row saw the same size and modification time, at least
  ``MIN_INTERVAL_SECONDS`` apart (the observation kept in the database between polls says
  what the previous poll saw, and since when). The interval holds whatever triggers the
  polls: two manual runs a second apart, during a writer's short pause, prove nothing;
- ``done_marker``: a marker file (such as ``{name}.done``) sits next to it.

``force`` (``POST /routes/{id}/run`` with ``{"force": true}``) takes the file at once.
Pure functions: the caller brings the observation and the clock.
"""

from __future__ import annotations

from dataclasses import dataclass

# How long a file's size and mtime must stay unchanged before ``stable_polls`` holds. Manual
# runs can poll at any rate, so the rule counts seconds, not only polls; 30 s outlasts the
# pauses of writers that flush in bursts (outside testing saw a 5 s pause taken as "done").
MIN_INTERVAL_SECONDS = 30.0


@dataclass(frozen=True)
class Observation:
    """What the polls so far saw of one file: ``polls`` counts consecutive polls that saw
    this exact size and mtime (1 = first seen like this), ``since`` is when (epoch seconds)
    the first of them saw it."""

    size: int
    mtime: float
    polls: int
    since: float


@dataclass(frozen=True)
class Decision:
    stable: bool
    reason: str


def observe(previous: Observation | None, *, size: int, mtime: float, now: float) -> Observation:
    """The observation after this poll at ``now``: unchanged size and mtime count one more
    poll (keeping ``since``); a change starts again at 1, since ``now``."""
    if previous is not None and previous.size == size and previous.mtime == mtime:
        return Observation(size=size, mtime=mtime, polls=previous.polls + 1, since=previous.since)
    return Observation(size=size, mtime=mtime, polls=1, since=now)


def decide(
    current: Observation,
    *,
    now: float,
    min_age_seconds: int = 0,
    stable_polls: bool = True,
    min_interval_seconds: float = MIN_INTERVAL_SECONDS,
    marker_required: bool = False,
    marker_present: bool = False,
    force: bool = False,
) -> Decision:
    """Whether a file in state ``current`` (after this poll) may be taken at ``now``.

    With ``stable_polls``, two polls must have seen it unchanged and the first of them must
    be at least ``min_interval_seconds`` before ``now``."""
    if force:
        return Decision(True, "forced")
    if marker_required and not marker_present:
        return Decision(False, "waiting for the done marker")
    if min_age_seconds and now - current.mtime < min_age_seconds:
        return Decision(False, f"younger than {min_age_seconds}s")
    if stable_polls and current.polls < 2:
        return Decision(False, "size and mtime not yet seen unchanged across two polls")
    if stable_polls and now - current.since < min_interval_seconds:
        return Decision(False, f"size and mtime unchanged for less than {min_interval_seconds:g}s")
    return Decision(True, "stable")
