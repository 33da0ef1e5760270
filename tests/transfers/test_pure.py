"""Pure modules: naming, schedules, stability, backoff, partitions, options."""

from __future__ import annotations

import random
from datetime import UTC, datetime

import pytest

from transfers import backoff, naming, options, schedule, stability
from transfers.partitions import partition_of

AT = datetime(2026, 3, 4, 5, 6, 7, tzinfo=UTC)
TID = "6f1c1f9e-2b5c-4d1e-9d7a-0c2f3e4a5b6c"


# --- naming ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{name}", "report.csv"),
        ("{stem}-{date:%Y%m%d}{ext}", "report-20260304.csv"),
        ("{date}_{name}", "2026-03-04_report.csv"),
        ("{transfer_id}{ext}", f"{TID}.csv"),
        ("x-{stem}", "x-report"),
    ],
)
def test_render(template, expected):
    assert naming.render(template, source_name="report.csv", transfer_id=TID, at=AT) == expected


def test_ext_keeps_the_last_suffix_and_dotfiles_have_none():
    assert naming.split_name("a.tar.gz") == ("a.tar", ".gz")
    assert naming.split_name(".bashrc") == (".bashrc", "")
    assert naming.render("{stem}!{ext}", source_name="noext", transfer_id=TID, at=AT) == "noext!"


@pytest.mark.parametrize("template", ["", "{nope}", "{name!r}", "{name:>10}", "a/{name}", "{name", "a\x01"])
def test_bad_templates_are_refused(template):
    with pytest.raises(naming.UnsafeName):
        naming.check_template(template)


@pytest.mark.parametrize("name", ["..", ".", "a/b", "a\\b", "a\x00b", "tab\tname", "x" * 256, ""])
def test_untrusted_names_are_refused(name):
    with pytest.raises(naming.UnsafeName):
        naming.check_remote_name(name)


@pytest.mark.parametrize("path", ["/a/../b", "../etc/passwd", "/a/b\x00", "/a/\x1b[31m", ""])
def test_untrusted_paths_are_refused(path):
    with pytest.raises(naming.UnsafeName):
        naming.check_remote_path(path)


def test_paths_are_normalised_under_the_endpoint_root():
    assert naming.check_remote_path("out//a/./b.csv") == "/out/a/b.csv"
    assert naming.check_remote_path("/etc/passwd") == "/etc/passwd"  # relative to the endpoint root


def test_rename_candidates():
    assert naming.rename_candidate("/in/report.csv", 1) == "/in/report-1.csv"
    assert naming.rename_candidate("/in/README", 2) == "/in/README-2"
    with pytest.raises(ValueError):
        naming.rename_candidate("/in/a", 0)


def test_destination_path_keeps_sub_folders_of_recursive_routes():
    kwargs = {"template": "{name}", "transfer_id": TID, "at": AT}
    assert naming.destination_path(folder="/in", source_path="/out/a.csv", source_root="/out", **kwargs) == "/in/a.csv"
    assert (
        naming.destination_path(folder="/in", source_path="/out/2026/03/a.csv", source_root="/out", **kwargs)
        == "/in/2026/03/a.csv"
    )
    assert naming.destination_path(folder="/", source_path="/a.csv", source_root="/", **kwargs) == "/a.csv"
    with pytest.raises(naming.UnsafeName):
        naming.destination_path(folder="/in", source_path="/other/a.csv", source_root="/out", **kwargs)


# --- schedule ---------------------------------------------------------------------------------


def test_next_run_in_utc_and_in_a_zone():
    after = datetime(2026, 1, 15, 10, 2, tzinfo=UTC)
    assert schedule.next_run_after("*/5 * * * *", "UTC", after) == datetime(2026, 1, 15, 10, 5, tzinfo=UTC)
    # 02:30 in Paris is 01:30 UTC in winter, 00:30 UTC in summer.
    assert schedule.next_run_after("30 2 * * *", "Europe/Paris", after) == datetime(2026, 1, 16, 1, 30, tzinfo=UTC)
    summer = datetime(2026, 7, 1, 12, 0, tzinfo=UTC)
    assert schedule.next_run_after("30 2 * * *", "Europe/Paris", summer) == datetime(2026, 7, 2, 0, 30, tzinfo=UTC)


def test_next_run_is_strictly_after():
    at = datetime(2026, 1, 15, 10, 5, tzinfo=UTC)
    assert schedule.next_run_after("*/5 * * * *", "UTC", at) == datetime(2026, 1, 15, 10, 10, tzinfo=UTC)


@pytest.mark.parametrize("cron", ["", "* * * *", "* * * * * *", "61 * * * *", "a b c d e", "*/0 * * * *"])
def test_bad_cron_is_refused(cron):
    with pytest.raises(schedule.InvalidSchedule):
        schedule.check_cron(cron)


@pytest.mark.parametrize("tz", ["Mars/Olympus", "", "../etc/passwd", " UTC"])
def test_bad_timezone_is_refused(tz):
    with pytest.raises(schedule.InvalidSchedule):
        schedule.check_timezone(tz)


def test_good_values_pass():
    assert schedule.check_cron("0  3 * * 1-5") == "0 3 * * 1-5"
    assert schedule.check_timezone("America/New_York") == "America/New_York"
    assert schedule.is_due(None, AT) and not schedule.is_due(datetime(2030, 1, 1, tzinfo=UTC), AT)


# --- stability ----------------------------------------------------------------------------------


def test_a_growing_file_is_not_stable_until_two_polls_agree():
    first = stability.observe(None, size=10, mtime=100.0, now=1000)
    assert not stability.decide(first, now=1000).stable
    grown = stability.observe(first, size=20, mtime=101.0, now=1040)
    assert grown.polls == 1 and grown.since == 1040 and not stability.decide(grown, now=1040).stable
    same = stability.observe(grown, size=20, mtime=101.0, now=1080)
    assert same.polls == 2 and same.since == 1040 and stability.decide(same, now=1080).stable


def test_two_polls_closer_than_the_minimum_interval_do_not_make_a_file_stable():
    # Issue 13 item 12: two manual runs 2 s apart during a writer's 5 s pause.
    first = stability.observe(None, size=64, mtime=100.0, now=1000)
    again = stability.observe(first, size=64, mtime=100.0, now=1002)
    assert again.polls == 2 and not stability.decide(again, now=1002).stable
    many = again
    for t in range(1003, 1000 + int(stability.MIN_INTERVAL_SECONDS)):
        many = stability.observe(many, size=64, mtime=100.0, now=t)
        assert not stability.decide(many, now=t).stable, t
    later = stability.observe(many, size=64, mtime=100.0, now=1000 + stability.MIN_INTERVAL_SECONDS)
    assert stability.decide(later, now=1000 + stability.MIN_INTERVAL_SECONDS).stable


def test_a_file_that_keeps_growing_is_never_stable():
    # Polls every 2 s; the writer appends a chunk every 6 s, so each size is seen by three
    # polls in a row (two polls agreeing alone would take it).
    obs = None
    for i in range(200):
        now = 1000.0 + 2 * i
        chunk = i // 3
        obs = stability.observe(obs, size=64 * (chunk + 1), mtime=1000.0 + 6 * chunk, now=now)
        assert not stability.decide(obs, now=now).stable, i


def test_min_age_and_marker_and_force():
    obs = stability.Observation(size=1, mtime=990.0, polls=5, since=900.0)
    assert not stability.decide(obs, now=1000, min_age_seconds=60).stable
    assert stability.decide(obs, now=1050, min_age_seconds=60).stable
    fresh = stability.Observation(size=1, mtime=999.0, polls=1, since=1000.0)
    assert stability.decide(fresh, now=1000, stable_polls=False).stable
    assert not stability.decide(obs, now=2000, marker_required=True, marker_present=False).stable
    assert stability.decide(obs, now=2000, marker_required=True, marker_present=True).stable
    assert stability.decide(fresh, now=1000, min_age_seconds=600, marker_required=True, force=True).stable


# --- backoff ------------------------------------------------------------------------------------


def test_backoff_ceilings_grow_and_are_capped():
    assert [backoff.ceiling(n, base=10, cap=900) for n in range(1, 9)] == [10, 20, 40, 80, 160, 320, 640, 900]
    assert backoff.ceiling(10_000, base=10, cap=900) == 900
    with pytest.raises(ValueError):
        backoff.ceiling(0, base=1, cap=1)


def test_backoff_is_jittered_within_bounds():
    rng = random.Random(7)
    delays = [backoff.delay(3, base=10, cap=900, rng=rng) for _ in range(500)]
    assert all(0 <= d <= 40 for d in delays)
    assert max(delays) > 30 and min(delays) < 10  # spread over the whole range
    assert len({round(d, 6) for d in delays}) > 400


def test_backoff_uses_settings(settings):
    settings.FERRY_RETRY_BASE_SECONDS = 1
    settings.FERRY_RETRY_CAP_SECONDS = 3
    assert all(backoff.delay(10) <= 3 for _ in range(100))


# --- partitions and options -------------------------------------------------------------------


def test_partition_is_stable_and_in_range():
    assert partition_of(TID, 64) == partition_of(TID.upper(), 64)
    assert partition_of(TID, 64) == 55  # the same in every process: sha256, not hash()
    spread = {partition_of(f"00000000-0000-0000-0000-{n:012d}", 8) for n in range(200)}
    assert spread == set(range(8))


def test_options_defaults_and_validation():
    assert options.normalize(None) == options.DEFAULTS
    got = options.normalize({"after_delivery": {"move_to": "archive//2026"}, "max_attempts": 20})
    assert got["after_delivery"] == {"move_to": "/archive/2026"} and got["max_attempts"] == 20
    with pytest.raises(options.InvalidOptions) as exc:
        options.normalize(
            {
                "max_attempts": 0,
                "on_conflict": "merge",
                "verify": "md5",
                "bogus": 1,
                "min_age_seconds": -1,
                "after_delivery": "shred",
                "done_marker": "{nope}",
                "stable_polls": "yes",
            }
        )
    assert set(exc.value.fields) == {
        "max_attempts",
        "on_conflict",
        "verify",
        "bogus",
        "min_age_seconds",
        "after_delivery",
        "done_marker",
        "stable_polls",
    }
    with pytest.raises(options.InvalidOptions):
        options.normalize({"max_attempts": True})
    with pytest.raises(options.InvalidOptions):
        options.normalize({"after_delivery": {"move_to": "/a/../b"}})


def test_own_marker_path_is_the_per_file_marker_next_to_its_file():
    at = datetime(2026, 1, 2)
    assert naming.own_marker_path("{name}.done", "/out/a.csv", at=at) == "/out/a.csv.done"
    assert naming.own_marker_path("{stem}.ok", "/out/sub/a.csv", at=at) == "/out/sub/a.ok"
    # A marker shared by the folder may still be awaited by other files: never handled.
    assert naming.own_marker_path("_SUCCESS", "/out/a.csv", at=at) is None
    assert naming.own_marker_path(None, "/out/a.csv", at=at) is None
