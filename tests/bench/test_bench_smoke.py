"""The benchmark harness works end to end on tiny inputs (no timing is asserted).

Runs every benchmark once with 1 MiB files and a handful of small files against the real
sshd and ``rclone serve s3``, then checks each figure and the JSON the runner writes.
"""

from __future__ import annotations

import json
import uuid

from bench import run, stack
from bench.common import Sizes
from bench.ferry import available as engine_available

REQUIRED = {"name", "ferry", "peer", "unit", "ratio", "sink", "date"}
SERVICE = ["event_latency", "route_small_files", "api_list"]  # the whole stack (issue 5)
# A two-region stack of its own (issue 11): too slow to start for a smoke test; its figure
# comes from the measuring run (docs/regions.md).
TWO_REGIONS = ["event_latency_other_region"]
CAPS = ["bandwidth_cap"]  # no peer by design: its own smoke test below
SCALE = ["scale"]  # a stack of its own, no peer: tests/bench/test_scale_smoke.py
# Step Functions (issue 15): a stack of its own, started like TWO_REGIONS' (its figure comes
# from the measuring run); tests/workers/test_stepfunctions.py runs the same path.
STEPFUNCTIONS = ["event_latency_stepfunctions"]
ENGINE = [name for name in run.BENCHMARKS if name not in SERVICE + TWO_REGIONS + CAPS + SCALE + STEPFUNCTIONS]


def test_every_benchmark_returns_figures_and_the_json_has_the_required_keys(tmp_path):
    figures = run.run(Sizes.tiny(), ENGINE, tmp_path / "out", work=tmp_path / "work")
    assert [f.name for f in figures] == ENGINE
    for figure in figures:
        assert figure.peer is not None and figure.peer > 0, (figure.name, figure.note)
        assert figure.sink and figure.unit
        if engine_available() or figure.name == "ssh_library":
            assert figure.ferry is not None and figure.ferry > 0, (figure.name, figure.note)
            assert figure.ratio is not None and figure.ratio > 0
    payload = json.loads((tmp_path / "out" / "benchmarks.json").read_text())
    entries = {b["name"]: b for b in payload["benchmarks"]}
    assert set(entries) == {
        "sftp_to_s3",
        "s3_to_sftp",
        "sftp_read",
        "small_files",
        "ssh_library",
        "memory",
        "pgp_encrypt",
    }
    for entry in entries.values():
        assert set(entry) >= REQUIRED
    markdown = (tmp_path / "out" / "BENCHMARKS.md").read_text()
    assert "| `sftp_to_s3` |" in markdown and "OpenSSH" in markdown and "rclone v" in markdown
    assert entries["sftp_to_s3"]["details"]["ceiling_mbps"] > 0


def test_the_service_benchmarks_run_on_one_stack_of_real_processes(tmp_path, monkeypatch):
    # A database of this checkout's own, so a benchmark run elsewhere keeps its ferry_bench.
    database = f"ferry_bench_smoke_{uuid.uuid4().hex[:8]}"
    monkeypatch.setattr(stack, "DATABASE", database)
    try:
        figures = run.run(Sizes.tiny(), SERVICE, tmp_path / "out", work=tmp_path / "work")
    finally:
        stack.drop_database(database)
    by_name = {f.name: f for f in figures}
    assert list(by_name) == SERVICE
    for figure in figures:
        assert figure.ferry is not None and figure.ferry > 0, (figure.name, figure.note)
    assert by_name["route_small_files"].peer and by_name["route_small_files"].ratio
    # event_latency ran first on the same stack: its delivered files' ledger entries are still
    # there when route_small_files times Ferry, and each Ferry run adds its own.
    sizes = by_name["route_small_files"].details["ledger_entries_before_each_run"]
    assert len(sizes) == Sizes.tiny().runs and sizes[0] >= Sizes.tiny().event_files
    assert sizes == sorted(sizes) and sizes[-1] >= sizes[0] + Sizes.tiny().route_files * (Sizes.tiny().runs - 1)
    assert by_name["event_latency"].peer is None and "1.4 s" in by_name["event_latency"].note
    assert by_name["event_latency"].details["files"] == Sizes.tiny().event_files
    assert by_name["api_list"].details["requests"] == Sizes.tiny().api_requests
    payload = json.loads((tmp_path / "out" / "benchmarks.json").read_text())
    assert {b["name"] for b in payload["benchmarks"]} == set(SERVICE)


def test_ratio_is_ferry_over_peer_and_null_without_ferry():
    from bench.common import Figure

    assert Figure("x", 300.0, 100.0, "MB/s", "s", "p").ratio == 3.0
    assert Figure("x", None, 100.0, "MB/s", "s", "p").ratio is None
    assert Figure("x", 5.0, 0.0, "MB/s", "s", "p").ratio is None


def test_the_bandwidth_cap_benchmark_runs_tiny(tmp_path):
    (figure,) = run.run(Sizes.tiny(), CAPS, tmp_path / "out", work=tmp_path / "work")
    assert figure.name == "bandwidth_cap" and figure.peer is None
    if engine_available():
        assert figure.ferry is not None and figure.ferry > 0, figure.note
        assert figure.details["cap_bytes_per_second"] > 0
        assert figure.details["error_percent"] is not None
        # Shaped: never much faster than the cap, even on a half-second copy.
        assert figure.ferry <= figure.details["cap_bytes_per_second"] / 1e6 * 1.5
    payload = json.loads((tmp_path / "out" / "benchmarks.json").read_text())
    assert [b["name"] for b in payload["benchmarks"]] == CAPS
