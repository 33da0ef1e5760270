"""The stability rule: is a listed file finished being written?

A file is taken only once it is stable, by every rule the route turns on:

- ``min_age_seconds``: its modification time is at least that old;
- ``stable_polls``: two polls in a row saw the same size and modification time (the
  observation kept in the database between polls says what the previous poll saw);
- ``done_marker``: a marker file (such as ``{name}.done``) sits next to it.

``force`` (``POST /routes/{id}/run`` with ``{"force": true}``) takes the file at once.
Pure functions: the caller brings the observation and the clock.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Observation:
    """What the polls so far saw of one file: ``polls`` counts consecutive polls that saw
    this exact size and mtime (1 = first seen like this)."""

    size: int
    mtime: float
    polls: int


@dataclass(frozen=True)
class Decision:
    stable: bool
    reason: str


def observe(previous: Observation | None, *, size: int, mtime: float) -> Observation:
    """The observation after this poll: unchanged size and mtime count one more poll."""
    if previous is not None and previous.size == size and previous.mtime == mtime:
        return Observation(size=size, mtime=mtime, polls=previous.polls + 1)
    return Observation(size=size, mtime=mtime, polls=1)


def decide(
    current: Observation,
    *,
    now: float,
    min_age_seconds: int = 0,
    stable_polls: bool = True,
    marker_required: bool = False,
    marker_present: bool = False,
    force: bool = False,
) -> Decision:
    """Whether a file in state ``current`` (after this poll) may be taken at ``now``."""
    if force:
        return Decision(True, "forced")
    if marker_required and not marker_present:
        return Decision(False, "waiting for the done marker")
    if min_age_seconds and now - current.mtime < min_age_seconds:
        return Decision(False, f"younger than {min_age_seconds}s")
    if stable_polls and current.polls < 2:
        return Decision(False, "size and mtime not yet seen unchanged across two polls")
    return Decision(True, "stable")
