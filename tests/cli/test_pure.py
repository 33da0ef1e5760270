"""Pure functions of the CLI: option and location parsing, sizes, the config file."""

from __future__ import annotations

import os
import stat

import pytest
import typer

from ferry_cli import config
from ferry_cli.app import parse_options, riding_out_blips
from ferry_cli.client import NetworkError, split_location
from ferry_cli.output import human_bytes


def test_parse_options_reads_json_values_and_falls_back_to_text():
    assert parse_options(
        [
            "max_attempts=3",
            "stable_polls=false",
            "on_conflict=rename",
            'after_delivery={"move_to": "/archive"}',
            "done_marker={name}.done",
        ]
    ) == {
        "max_attempts": 3,
        "stable_polls": False,
        "on_conflict": "rename",
        "after_delivery": {"move_to": "/archive"},
        "done_marker": "{name}.done",
    }
    with pytest.raises(typer.BadParameter):
        parse_options(["no-equals"])


def test_split_location():
    assert split_location("my sftp:/a/b:c.csv") == ("my sftp", "/a/b:c.csv")
    for bad in ("no-colon", ":/path", "endpoint:"):
        with pytest.raises(ValueError):
            split_location(bad)


def test_human_bytes():
    assert human_bytes(None) == "?"
    assert human_bytes(512) == "512 B"
    assert human_bytes(200 * 1024 * 1024) == "200.0 MiB"


def test_config_file_round_trip_and_environment_precedence(tmp_path, monkeypatch):
    path = tmp_path / "c" / "config.toml"
    monkeypatch.setenv("FERRY_CONFIG", str(path))
    monkeypatch.delenv("FERRY_API_KEY", raising=False)
    monkeypatch.delenv("FERRY_API_URL", raising=False)
    with pytest.raises(config.ConfigError, match="ferry login"):
        config.load()
    path.parent.mkdir()
    path.write_text("stale")
    path.chmod(0o644)
    config.write_file(url="http://ferry.example:8800/", api_key='fy_a_b"\\')  # an existing, readable file too
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert config.load() == config.Settings(url="http://ferry.example:8800", api_key='fy_a_b"\\')
    monkeypatch.setenv("FERRY_API_KEY", "fy_env_key")
    assert config.load().api_key == "fy_env_key"


def test_a_watch_rides_out_a_few_dropped_connections_but_not_endless_ones():
    calls: list[str] = []

    def flaky(failures: int):
        def fetch() -> dict:
            calls.append("try")
            if len(calls) <= failures:
                raise NetworkError("Cannot reach Ferry")
            return {"state": "succeeded"}

        return fetch

    slept: list[float] = []
    assert riding_out_blips(flaky(2), tries=3, interval=0.5, sleep=slept.append)() == {"state": "succeeded"}
    assert slept == [0.5, 0.5]
    calls.clear()
    with pytest.raises(NetworkError):
        riding_out_blips(flaky(3), tries=3, interval=0.5, sleep=slept.append)()
