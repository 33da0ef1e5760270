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
    # Issue 14: every peer at its defaults and its best, client CPU for each, the page lists flags.
    rclone_variants = {"rclone", "rclone_best", "rclone_best_nohash"}
    for name, extra in (("sftp_to_s3", "boto3_ceiling"), ("s3_to_sftp", "openssh_put_ceiling")):
        details = entries[name]["details"]
        assert set(entries[name]["runs"]) == {"ferry", extra} | rclone_variants
        assert set(details["peer_variants"]) == rclone_variants
        assert "--ignore-checksum" in details["peer_variants"]["rclone_best_nohash"]
        assert details["peer_variant"] in ("rclone", "rclone_best")  # never the one without hashes
        assert all(details["cpu_s_per_gib"][tool] > 0 for tool in rclone_variants | {extra})
        assert details["target_mbps"] > 0
    assert "-c aes128-gcm@openssh.com" in entries["s3_to_sftp"]["details"]["ceiling_flags"]
    read = entries["sftp_read"]["details"]
    assert read["peer_variants"]["openssh_sftp"] == "(defaults)"
    assert "-c aes128-gcm@openssh.com -R" in read["peer_variants"]["openssh_sftp_best"]
    assert read["cpu_s_per_gib"]["openssh_sftp"] > 0 and read["cpu_s_per_gib"]["openssh_sftp_best"] > 0
    small = entries["small_files"]["details"]
    assert set(entries["small_files"]["runs"]) == {"ferry"} | rclone_variants
    assert small["unverified_peer_variant"] == "rclone_best_nohash"
    assert all(small["cpu_s_per_1000_files"][tool] > 0 for tool in rclone_variants)
    if engine_available():
        assert read["cpu_s_per_gib"]["ferry"] > 0 and small["cpu_s_per_1000_files"]["ferry"] > 0
    assert "## Peers and their settings" in markdown and "## Client CPU" in markdown
    assert "`--transfers 32 --checkers 32`" in markdown


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
    # AWS requests per file, from the emulator's counter: rclone puts each file once.
    route = by_name["route_small_files"].details
    by_operation = route["aws_requests_per_file_by_operation"]
    assert by_operation["rclone"]["s3:PutObject"] == 1.0
    assert by_operation["rclone_best"]["s3:PutObject"] == 1.0
    assert by_operation["ferry"]["s3:PutObject"] >= 1.0
    assert route["aws_requests_per_file"]["ferry"] >= route["aws_requests_per_file"]["ferry_net"] > 0
    assert route["cpu_s_per_1000_files"]["ferry"] > 0 and route["cpu_s_per_1000_files"]["rclone"] > 0
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


def test_tune_keeps_the_best_candidate_once_a_session_and_records_the_grid():
    from bench.common import Env, Variant, tune

    env = Env()
    a, b, c = (Variant(k, k, (f"--{k}",)) for k in ("a", "b", "c"))
    tried: list[str] = []

    def once(v: Variant) -> float:
        tried.append(v.key)
        if v.key == "c":
            raise RuntimeError("the server refused it")
        return {"a": 10.0, "b": 30.0}[v.key]

    assert tune(env, "k", [a, b, c], once, enabled=True) == b
    assert env.grids["k"] == {"--a": 10.0, "--b": 30.0, "--c": 0.0}
    assert tune(env, "k", [a, b, c], once, enabled=True) == b and tried == ["a", "b", "c"]  # once a session
    assert tune(env, "other", [c, a], once, enabled=False) == c and "other" not in env.grids


def test_verdicts_follow_issue_14s_goals():
    from bench import event_latency, route_small_files, sftp_read, sftp_to_s3, small_files
    from bench.common import Figure, best_of

    assert best_of({"x": [1.0, 5.0, 3.0], "y": [4.0], "z": []}, ["x", "y", "z"]) == "y"
    assert best_of({"x": [2.0], "y": [1.0]}, ["x", "y"], better="lower") == "y"

    def fig(ferry: float, peer: float, **details: object) -> Figure:
        return Figure("x", ferry, peer, "MB/s", "s", "p", details=details)

    # sftp_read: as fast as the best OpenSSH and no more CPU per GiB than it.
    cpu = {"ferry": 5.0, "openssh_sftp_best": 6.0}
    assert sftp_read.met(fig(100, 100, peer_variant="openssh_sftp_best", cpu_s_per_gib=cpu)) is True
    assert sftp_read.met(fig(100, 101, peer_variant="openssh_sftp_best", cpu_s_per_gib=cpu)) is False
    cpu["ferry"] = 7.0
    assert sftp_read.met(fig(200, 100, peer_variant="openssh_sftp_best", cpu_s_per_gib=cpu)) is False
    # Large files: 1.5x the best rclone, or 90% of the ceiling where that is lower.
    assert sftp_to_s3.met(fig(150, 100, target_mbps=150.0)) is True
    assert sftp_to_s3.met(fig(149, 100, target_mbps=150.0)) is False
    # small_files: 2x rclone with its MD5 check and 1x rclone without any.
    assert small_files.met(fig(200, 100, ratio_vs_rclone_no_hashcheck=1.0)) is True
    assert small_files.met(fig(200, 100, ratio_vs_rclone_no_hashcheck=0.9)) is False
    assert small_files.met(fig(190, 100, ratio_vs_rclone_no_hashcheck=3.0)) is False
    # route_small_files: 1x the best rclone, ≤ 5 AWS requests per file net of idle polling.
    assert route_small_files.met(fig(10, 10, aws_requests_per_file={"ferry": 9.0, "ferry_net": 5.0})) is True
    assert route_small_files.met(fig(10, 10, aws_requests_per_file={"ferry": 9.0, "ferry_net": 5.1})) is False
    assert route_small_files.met(fig(9, 10, aws_requests_per_file={"ferry": 4.0, "ferry_net": 4.0})) is False
    # event_latency: p50 < 0.5 s and p95 < 1 s.
    assert event_latency.met(Figure("e", 0.4, None, "s", "s", None, details={"p95_s": 0.9})) is True
    assert event_latency.met(Figure("e", 0.6, None, "s", "s", None, details={"p95_s": 0.9})) is False
    assert event_latency.met(Figure("e", 0.4, None, "s", "s", None, details={"p95_s": 1.0})) is False
