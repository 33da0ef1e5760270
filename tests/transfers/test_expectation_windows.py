"""Late files, pure: the expectation's validation and its windows' times (cron in the route's
time zone, grace, DST edges). The evaluation against the database: test_late_files.py."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from transfers import options, schedule


def utc(*args: int) -> datetime:
    return datetime(*args, tzinfo=UTC)


def test_a_daily_expectation_stays_at_local_time_across_the_spring_change():
    # London: 06:00 GMT is 06:00Z; from 29 March 2026, 06:00 BST is 05:00Z.
    times = schedule.fire_times_between("0 6 * * *", "Europe/London", utc(2026, 3, 27, 12), utc(2026, 3, 31), 10)
    assert times == [utc(2026, 3, 28, 6), utc(2026, 3, 29, 5), utc(2026, 3, 30, 5)]


def test_a_time_in_the_repeated_hour_is_expected_once_when_clocks_go_back():
    # New York, 1 November 2026: 01:30 happens at 05:30Z (EDT) and again at 06:30Z (EST).
    times = schedule.fire_times_between("30 1 * * *", "America/New_York", utc(2026, 10, 31, 12), utc(2026, 11, 3), 10)
    assert times == [utc(2026, 11, 1, 5, 30), utc(2026, 11, 2, 6, 30)]
    # Also when one evaluation stopped right after the first 01:30.
    after = schedule.fire_times_between("30 1 * * *", "America/New_York", utc(2026, 11, 1, 5, 30), utc(2026, 11, 3), 10)
    assert after == [utc(2026, 11, 2, 6, 30)]
    assert schedule.next_fire_after("30 1 * * *", "America/New_York", utc(2026, 11, 1, 5, 30)) == utc(
        2026, 11, 2, 6, 30
    )


def test_a_time_skipped_when_clocks_go_forward_is_expected_at_the_first_instant_after():
    # New York, 8 March 2026: 02:00-03:00 does not exist; 02:30 falls to 03:00 EDT = 07:00Z.
    times = schedule.fire_times_between("30 2 * * *", "America/New_York", utc(2026, 3, 7, 12), utc(2026, 3, 10), 10)
    assert times == [utc(2026, 3, 8, 7), utc(2026, 3, 9, 6, 30)]


def test_the_window_list_stops_at_the_limit_and_at_until():
    every_hour = schedule.fire_times_between("0 * * * *", "UTC", utc(2026, 1, 1), utc(2026, 1, 2), 5)
    assert every_hour == [utc(2026, 1, 1, h) for h in range(1, 6)]
    # ``until`` is included (a deadline exactly now is due), ``after`` is not.
    assert schedule.fire_times_between("0 6 * * *", "UTC", utc(2026, 1, 1, 6), utc(2026, 1, 2, 6), 5) == [
        utc(2026, 1, 2, 6)
    ]


def test_an_expectation_is_completed_with_its_defaults():
    out = options.normalize({"expect": {"cron": "0  6 * * 1-5"}})
    assert out["expect"] == {"cron": "0 6 * * 1-5", "grace_seconds": 0, "min_files": 1}
    assert options.normalize({})["expect"] is None
    full = {"cron": "0 6 * * *", "grace_seconds": 1800, "min_files": 3}
    assert options.normalize({"expect": full})["expect"] == full


@pytest.mark.parametrize(
    ("expect", "field"),
    [
        ("0 6 * * *", "expect"),
        ({}, "expect.cron"),
        ({"cron": "61 6 * * *"}, "expect.cron"),
        ({"cron": "0 6 * *"}, "expect.cron"),
        ({"cron": "*/5 * * * *"}, "expect.cron"),  # more often than every 15 minutes
        ({"cron": "0 6 * * *", "grace_seconds": -1}, "expect.grace_seconds"),
        ({"cron": "0 6 * * *", "grace_seconds": 8 * 24 * 3600}, "expect.grace_seconds"),
        ({"cron": "0 6 * * *", "grace_seconds": "30m"}, "expect.grace_seconds"),
        ({"cron": "0 6 * * *", "min_files": 0}, "expect.min_files"),
        ({"cron": "0 6 * * *", "min_files": True}, "expect.min_files"),
        ({"cron": "0 6 * * *", "timezone": "UTC"}, "expect.timezone"),
    ],
)
def test_bad_expectations_name_the_field(expect, field):
    with pytest.raises(options.InvalidOptions) as caught:
        options.normalize({"expect": expect})
    assert field in caught.value.fields, caught.value.fields
