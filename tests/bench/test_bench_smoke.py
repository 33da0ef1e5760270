"""The benchmark harness works end to end on tiny inputs (no timing is asserted).

Runs every benchmark once with 1 MiB files and a handful of small files against the real
sshd and ``rclone serve s3``, then checks each figure and the JSON the runner writes.
"""

from __future__ import annotations

import json

from bench import run
from bench.common import Sizes
from bench.ferry import available as engine_available

REQUIRED = {"name", "ferry", "peer", "unit", "ratio", "sink", "date"}


def test_every_benchmark_returns_figures_and_the_json_has_the_required_keys(tmp_path):
    figures = run.run(Sizes.tiny(), list(run.BENCHMARKS), tmp_path / "out", work=tmp_path / "work")
    assert [f.name for f in figures] == list(run.BENCHMARKS)
    for figure in figures:
        assert figure.peer is not None and figure.peer > 0, (figure.name, figure.note)
        assert figure.sink and figure.unit
        if engine_available() or figure.name == "ssh_library":
            assert figure.ferry is not None and figure.ferry > 0, (figure.name, figure.note)
            assert figure.ratio is not None and figure.ratio > 0
    payload = json.loads((tmp_path / "out" / "benchmarks.json").read_text())
    entries = {b["name"]: b for b in payload["benchmarks"]}
    assert set(entries) == {"sftp_to_s3", "s3_to_sftp", "sftp_read", "small_files", "ssh_library", "memory"}
    for entry in entries.values():
        assert set(entry) >= REQUIRED
    markdown = (tmp_path / "out" / "BENCHMARKS.md").read_text()
    assert "| `sftp_to_s3` |" in markdown and "OpenSSH" in markdown and "rclone v" in markdown
    assert entries["sftp_to_s3"]["details"]["ceiling_mbps"] > 0


def test_ratio_is_ferry_over_peer_and_null_without_ferry():
    from bench.common import Figure

    assert Figure("x", 300.0, 100.0, "MB/s", "s", "p").ratio == 3.0
    assert Figure("x", None, 100.0, "MB/s", "s", "p").ratio is None
    assert Figure("x", 5.0, 0.0, "MB/s", "s", "p").ratio is None
